"""Prometheus metrics: gRPC calls and HTTP requests by status, latency, the served version and any refused one."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.follower import Refusal
from service.predictor import ServedModel

UNKNOWN_METHOD = "unknown"  # the method label of calls to methods this server lacks, so paths add no labels
UNMATCHED_ROUTE = "unmatched"  # the route label of HTTP requests to no route, so paths add no labels


class ServiceMetrics:
    def __init__(
        self, model_name: str, alias: str, replica: str = "", registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._labels = (model_name, alias, replica)
        self.requests = Counter(
            "mnist37_grpc_requests",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mnist37_grpc_latency_seconds",
            "RPC latency, by method",
            ["method"],
            registry=self.registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.served = Gauge(
            "mnist37_served_model_version",
            "Registry version being served (0: none), by replica, so that replicas can be seen to agree",
            ["model", "alias", "replica"],
            registry=self.registry,
        )
        self.refused = Gauge(
            "mnist37_refused_model_version",
            "Registry version the alias points at that was refused, with the reason (absent: none)",
            ["model", "alias", "replica", "reason"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "mnist37_http_requests",
            "HTTP requests handled, by route (its template: /v2/models/{model}/infer) and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "mnist37_http_latency_seconds",
            "HTTP request latency, by route",
            ["route"],
            registry=self.registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.http_timeouts = Counter(
            "mnist37_http_timeouts",
            "HTTP timeouts, by reason: body (a body slower than --http-read-seconds, answered 408); idle or "
            "headers (a connection closed after --http-idle-seconds with nothing, or half a request, sent); "
            "answer (a connection ended when its client read none of its answers for --http-read-seconds)",
            ["reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mnist37_in_flight_calls",
            "Calls running or waiting for a forward, both protocols, health checks aside: what to scale on",
            ["replica"],
            registry=self.registry,
        )
        self.served.labels(*self._labels).set(0)
        for reason in ("body", "idle", "headers", "answer"):  # every reason at 0 from the start, so rates start from it
            self.http_timeouts.labels(reason)
        self._refused: dict[str, tuple[str, ...]] = {}  # alias → the labels of its refusal, if any
        self._children: dict[tuple[str, grpc.StatusCode], tuple[Counter, Histogram]] = {}
        self._http_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def count_in_flight(self, calls: Callable[[], float]) -> None:
        """Read at each scrape, so that the calls' own path does no more than count."""
        self.in_flight.labels(self._labels[2]).set_function(calls)

    def following(self, alias: str) -> None:
        """A second alias (the shadow's) is followed too: 0 until it has a version."""
        self.served.labels(self._labels[0], alias, self._labels[2]).set(0)

    def model_changed(self, model: ServedModel) -> None:
        self.served.labels(model.name, model.alias, self._labels[2]).set(float(model.version))

    def refusal_changed(self, refusal: Refusal | None, alias: str = "") -> None:
        alias = alias or self._labels[1]
        previous = self._refused.pop(alias, None)
        if previous is not None:
            self.refused.remove(*previous)
        if refusal is not None:
            labels = (self._labels[0], alias, self._labels[2], refusal.reason[:200])
            self.refused.labels(*labels).set(float(refusal.version))
            self._refused[alias] = labels

    def unknown_method(self) -> None:
        """A call to a method this server does not have: counted, but with no latency, since nothing ran."""
        self.requests.labels(UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name).inc()

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        # Looking a labelled child up takes a lock and a few allocations; each is looked up once.
        children = self._children.get((method, code))
        if children is None:
            children = self.requests.labels(method, code.name), self.latency.labels(method)
            self._children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def unparsed_http(self, status: int) -> None:
        """HTTP that could not be parsed, answered by aiohttp itself: counted, with no latency, since
        nothing ran."""
        self.http_requests.labels(UNMATCHED_ROUTE, str(status)).inc()

    def observe_http(self, route: str, status: int, seconds: float) -> None:
        children = self._http_children.get((route, status))  # looked up once each, as for gRPC
        if children is None:
            children = self.http_requests.labels(route, str(status)), self.http_latency.labels(route)
            self._http_children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)
