"""Index revisions, one file each, written by hand. A revision never changes once released."""
