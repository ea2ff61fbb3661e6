"""Tests of learning_words/world."""
