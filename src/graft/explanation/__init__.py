"""Explanations: Grad-CAM and SHAP attributions, their deletion check, and the pictures and pages
that show them (``graft.explain``, ``graft explain``, the report's misclassified examples)."""
