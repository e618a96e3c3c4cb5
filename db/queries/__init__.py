"""Typed, keyword-only queries that the API and the workers share.

They flush but never commit: the caller's ``session_scope`` owns the transaction.
"""
