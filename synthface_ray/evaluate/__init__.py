"""Evaluation: verification metrics and protocols (pure numpy), reports."""
