#!/usr/bin/env bash
# Start the local Redis and RabbitMQ if they are installed but not answering. Never fails:
# the tests decide whether a missing service is a skip or (III_REQUIRE_SERVICES=1) a failure.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do port_open 5672 && break; sleep 1; done
fi
exit 0
