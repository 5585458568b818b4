"""Errors the store raises. Each names the view, feature, key or value at fault."""

from __future__ import annotations


class HexpireStoreError(Exception):
    """Base class, so callers can catch everything this store raises on purpose."""


class InvalidFeatureValue(HexpireStoreError, ValueError):
    """A row was rejected before anything was written: wrong type, unknown feature, bad key."""


class FieldConflictError(HexpireStoreError, ValueError):
    """Two views of one entity would write the same hash field and silently overwrite each other."""


class InvalidViewConfig(HexpireStoreError, ValueError):
    """A view's tags or the store config cannot be honoured."""


class UnsupportedRedisServer(HexpireStoreError, RuntimeError):
    """The server cannot run this store (too old, or missing the HEXPIRE command family)."""


class FieldExpiryError(HexpireStoreError, RuntimeError):
    """Redis answered a per-field expiry with something other than success."""
