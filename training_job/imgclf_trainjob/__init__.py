"""The imgclf training job: fastai fine-tuning on SageMaker's container contract, exporting ONNX."""

__version__ = "0.1.0"
