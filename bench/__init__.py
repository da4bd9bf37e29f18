"""`make bench`: the service measured against the simplest thing that does the
same job, in the same run on the same machine. See bench/RESULTS.md."""
