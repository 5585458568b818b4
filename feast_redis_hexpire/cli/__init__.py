"""`feast-redis-hexpire`: the operator CLI. Look at what the store keeps in Redis and check
a setup, from a Feast repo's feature_store.yaml:

    feast-redis-hexpire inspect u0001   one entity's hash: fields, values, field and key TTLs
    feast-redis-hexpire stats           entity count, TTL distribution, memory per entity
    feast-redis-hexpire doctor          server version, per-field expiry, permissions, views

Every command only reads from Redis.
"""
