"""Starting SageMaker training jobs, recording their outcome, and promoting the models they make."""
