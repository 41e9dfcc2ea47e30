"""The classifier function: classifies every image dropped under the upload prefix of the data bucket."""
