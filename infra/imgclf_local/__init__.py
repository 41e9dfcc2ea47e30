"""The embedded local stack: the AWS services template.yaml uses, emulated on one machine and wired from it."""
