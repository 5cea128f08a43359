"""What each instance was: the DescribeInstances model and the cache that keeps it after release."""
