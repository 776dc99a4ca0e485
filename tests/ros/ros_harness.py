"""Shared pieces of the multi-process ROS tests: a private rclpy context on its own domain id,
spun on a background thread, with helpers to collect messages and call services."""

import json
import random
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")


def fresh_domain_id() -> int:
    # Separate from tests/conftest.py's per-run id so two modules never hear each other.
    return random.SystemRandom().randint(101, 200)


class RosHarness:
    def __init__(self, domain_id: int, name: str = "test_harness"):
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.domain_id = domain_id
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = Node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.messages = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.ctx.ok():
                    return
                raise

    def collect(self, msg_type, topic, qos, keep=2000):
        """Subscribe and keep (receipt time, message) pairs under ``topic``."""
        self.messages[topic] = []

        def cb(msg):
            with self.lock:
                buf = self.messages[topic]
                buf.append((time.monotonic(), msg))
                del buf[:-keep]

        self.node.create_subscription(msg_type, topic, cb, qos)

    def since(self, topic, t0):
        with self.lock:
            return [m for t, m in self.messages[topic] if t >= t0]

    def latest(self, topic):
        with self.lock:
            buf = self.messages[topic]
            return buf[-1][1] if buf else None

    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        return predicate()

    def status(self, topic="/sim/status"):
        msg = self.latest(topic)
        return json.loads(msg.data) if msg is not None else None

    def call(self, srv_type, name, request, timeout=30.0):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), "service %s not available" % name
        fut = client.call_async(request)
        assert self.wait_for(fut.done, timeout), "service %s did not answer" % name
        return fut.result()

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.ctx.try_shutdown()
        self._thread.join(timeout=2.0)
