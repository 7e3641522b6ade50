"""Governance console pages that are not about one workload: the audit log and service tokens."""
