"""The node: lease settings reach the harvester, and status says who leads the harvest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quantumrng.errors import LeaseLost
from quantumrng.node import Node
from tests.conftest import make_settings

WAIT_SECONDS = 30.0


def test_the_harvester_gets_the_lease_settings_and_a_holder_named_after_the_node(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path, pool="memory", source="os", node_name="rack:7", harvest_lease_seconds=4.5
    )
    node = Node(settings)
    try:
        harvester = node.harvester
        assert harvester.lease_seconds == 4.5 and harvester.lease_name == "harvest:os"
        assert harvester.holder.startswith(f"rack:7:{os.getpid()}:")
    finally:
        node.close()


def test_status_names_no_leader_while_nobody_harvests(tmp_path: Path) -> None:
    node = Node(make_settings(tmp_path, pool="sqlite", source="os"))
    try:
        status = node.status()
        assert status["leader"] is None and status["harvester"] is None
    finally:
        node.close()


def test_status_says_who_leads_from_the_store(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="sqlite", source="os", node_name="rack:7")
    leader = Node(settings, harvest_on_demand=False)
    observer = Node(settings.replace(node_name="other"))
    try:
        leader.harvester.start()
        lease = leader.harvester._lease_keeper().wait(WAIT_SECONDS)
        assert lease is not None
        status = observer.status()
        assert status["leader"]["holder"] == leader.harvester.holder
        assert status["leader"]["node"] == "rack:7"  # a node name may hold colons
        assert status["leader"]["token"] == lease.token
        assert 0 < status["leader"]["expires_in"] <= settings.harvest_lease_seconds
        json.dumps(status)
        snapshot = leader.status()["harvester"]
        assert snapshot["active"] is True and snapshot["lease_token"] == lease.token
    finally:
        leader.close()
        observer.close()
    again = Node(settings)
    try:
        assert again.status()["leader"] is None  # closing the leader released the lease
    finally:
        again.close()


def test_harvest_on_demand_takes_the_lease_and_gives_it_back(tmp_path: Path) -> None:
    node = Node(make_settings(tmp_path, pool="sqlite", source="os"))
    try:
        assert len(node.engine.random_bytes(32)) == 32  # an empty pool: harvested on demand
        assert node.harvester.harvests >= 1
        assert node.status()["leader"] is None
    finally:
        node.close()


def test_harvest_on_demand_beside_a_leader_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="sqlite", source="os", harvest_lease_seconds=0.3)
    node = Node(settings)
    try:
        assert node.pool.acquire_lease("harvest:os", "server:9:abcd", 60) is not None
        with pytest.raises(LeaseLost, match="server:9:abcd"):
            node.engine.random_bytes(32)
        assert node.harvester.harvests == 0
    finally:
        node.close()


def test_status_names_the_redis_store_without_its_password(tmp_path: Path) -> None:
    from tests.pool.support import delete_prefix, new_prefix, redis_url

    prefix = new_prefix()
    url = redis_url().replace("redis://", "redis://:s3cr3t-pw@")
    settings = make_settings(tmp_path, pool="redis", source="os", redis_url=url, redis_key=prefix)
    node = Node(settings)
    try:
        text = json.dumps(node.status(), default=str) + repr(node.pool)
        assert "s3cr3t-pw" not in text
        assert node.status()["pool"]["store"] == "redis://127.0.0.1:6379/0"
    finally:
        node.close()
        delete_prefix(prefix)
