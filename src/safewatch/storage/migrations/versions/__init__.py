"""Migration revisions, oldest first (``v0001_...``)."""
