"""The real servers the suite runs on answer over TCP, and restart cleanly."""

from __future__ import annotations

import pymongo
import redis

from slurp.localservers import RedisServer, free_port


def test_redis_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True


def test_mongo_answers(mongo_url: str, mongo_db_name: str) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_url)
    client[mongo_db_name].probe.insert_one({"a": 1})
    assert client[mongo_db_name].probe.count_documents({}) == 1
    client.drop_database(mongo_db_name)


def test_redis_restarts_on_the_same_port() -> None:
    with RedisServer(port=free_port()) as server:
        port = server.port
        server.kill()
        assert not server.running
        server.start()
        assert server.port == port
        assert redis.Redis.from_url(server.url).ping() is True
