"""CSV imports of leads: reading the file (reader), one batch against the
database (apply), the job that runs it batch by batch and its report."""
