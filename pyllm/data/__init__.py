"""Real data sets pyllm's examples, tests and benchmarks read (fetched by :mod:`pyllm.hub`)."""

from .sentiment import SentimentRecord, read_sentiment_corpus

__all__ = ["SentimentRecord", "read_sentiment_corpus"]
