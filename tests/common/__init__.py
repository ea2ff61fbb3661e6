"""Tests of learning_words/common."""
