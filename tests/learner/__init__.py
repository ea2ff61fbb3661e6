"""Tests of learning_words/learner."""
