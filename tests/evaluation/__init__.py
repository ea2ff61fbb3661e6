"""Tests of learning_words/evaluation."""
