"""Evaluation of a trained model: clean accuracy and the robustness evaluation."""
