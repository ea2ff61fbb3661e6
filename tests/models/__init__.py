"""Tests of learning_words/models."""
