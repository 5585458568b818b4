"""What the demo serves and to whom: the applied views' features, the repo's one join key,
and the loaded users; a request's user and features are checked against them here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .coverage import spread
from .errors import DemoError, NotFound, shown

NO_USERS = "no users are loaded (after a reset); bulk-load first"


@dataclass(frozen=True)
class FeatureInfo:
    ref: str  # "view:feature", what get_online_features takes
    view: str
    name: str
    kind: str  # batch / stream
    dtype: str
    field: str  # hash field


@dataclass(frozen=True)
class Catalog:
    """The online views as the store lays them out, and their features in page order."""

    layouts: list[Any] = field(default_factory=list)
    features: list[FeatureInfo] = field(default_factory=list)
    join_key: str = "user_id"

    @classmethod
    def of(cls, views: Sequence[Any], repo_config: Any, join_keys: Sequence[str]) -> Catalog:
        from feast_redis_hexpire.store import layout_of

        if len(join_keys) != 1:
            raise RuntimeError(f"the demo expects one join key, the repo has {list(join_keys)}")
        layouts = [layout_of(fv, repo_config) for fv in views]
        features = []
        for fv, layout in zip(views, layouts):
            dtypes = {f.name: str(f.dtype) for f in fv.features}
            features.extend(
                FeatureInfo(
                    ref=f"{layout.name}:{feature.name}",
                    view=layout.name,
                    name=feature.name,
                    kind=layout.kind.value,
                    dtype=dtypes.get(feature.name, "?"),
                    field=feature.field.decode(),
                )
                for feature in layout.features.values()
            )
        return cls(layouts, features, join_keys[0])

    @property
    def stream_layouts(self) -> list[Any]:
        return [layout for layout in self.layouts if layout.kind.value == "stream"]

    @property
    def stream_ttl_seconds(self) -> int | None:
        """The expiry of the streamed fields as the store resolves it (None: no expiry)."""
        return min((layout.ttl_seconds for layout in self.stream_layouts), default=0) or None

    def check_features(self, refs: Sequence[str] | None) -> list[FeatureInfo]:
        """The features a request names (all when none), each once, in the order given."""
        by_ref = {f.ref: f for f in self.features}
        if not refs:
            return list(self.features)
        unknown = [r for r in refs if r not in by_ref]
        if unknown:
            listed = ", ".join(shown(u) for u in unknown[:3]) + (
                f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            )
            raise DemoError(f"unknown feature(s) {listed}; known: {', '.join(by_ref)}", 422)
        seen: dict[str, FeatureInfo] = {}
        for ref in refs:
            seen.setdefault(ref, by_ref[ref])
        return list(seen.values())


class Users:
    """The loaded users in load order, and the keys of an even sample of them (coverage and
    served age), built once per set of users: every poll would otherwise rebuild up to
    1,000 keys."""

    def __init__(self, key_of: Callable[[str], str]) -> None:
        self.key_of = key_of
        self.ids: list[str] = []
        self._set: set[str] = set()
        self._sample: list[str] | None = None

    def replace(self, ids: list[str]) -> None:
        self._set = set(ids)
        self.ids = ids
        self._sample = None

    def sample_keys(self) -> list[str]:
        if self._sample is None:
            self._sample = [self.key_of(uid) for uid in spread(self.ids)]
        return self._sample

    def check(self, user_id: str) -> str:
        user_id = (user_id or "").strip()
        if not self.ids:  # first: after a reset the page has no user to fill in
            raise NotFound(NO_USERS)
        if not user_id:
            raise DemoError("user_id is required: enter a user id such as " + self.ids[0], 422)
        if user_id not in self._set:
            raise NotFound(f"unknown user {shown(user_id)}: the demo has users {self.ids[0]} .. {self.ids[-1]}")
        return user_id
