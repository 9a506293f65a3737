"""SP 800-90B entropy assessment: IID tests (§5), non-IID estimators (§6.3), restart tests (§3.1.4)."""
