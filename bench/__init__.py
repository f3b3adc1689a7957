"""`make bench`: hocba against the straightforward pyHanko pipeline, in the same run."""
