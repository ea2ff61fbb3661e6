"""Tests of learning_words/data."""
