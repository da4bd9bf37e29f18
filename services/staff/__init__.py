"""Staff: accounts, passwords and sign-in, and the audit log of sensitive acts."""
