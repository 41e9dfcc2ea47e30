"""The collector: image search results, URL lists or folders in, a validated, de-duplicated dataset out."""

from .pipeline import CollectConfig, Progress, collect, collect_label

__all__ = ["CollectConfig", "Progress", "collect", "collect_label"]
