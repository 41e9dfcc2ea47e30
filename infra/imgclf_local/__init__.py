"""The embedded local stack and the `imgclf` command line: imgclf on one machine, wired from template.yaml."""
