"""What every blueprint shares on the web side: security headers, error
pages, role checks, the public page cache in front of the app, and the form
base classes. Blueprints hold only blueprints and their own forms."""
