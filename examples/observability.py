"""Watch a throttled run: aiocognito's log records, spans and metrics, against the fake Cognito.

    pip install 'aiocognito[otel]' opentelemetry-sdk
    python examples/observability.py [--rows 300] [--quota 40]

The embedded fake (:class:`aiocognito.testing.FakeCognito`) allows ``--quota`` updates per
second, while the client is told the quota is twice that. So the run is throttled, the limiter
cuts its rate (logged at INFO), and everything is visible:

* log records from the ``aiocognito`` logger on stderr (INFO: rate changes; WARNING: calls that
  ran out of retries while throttled; add ``--debug`` for one line per attempt);
* a span per public call and one for the bulk run, printed by the SDK's console exporter;
* the metrics (requests, throttles, call durations, the allowed rate...) printed once at the end
  by the console metric exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

import aiocognito
import aiocognito.otel
from aiocognito.testing import CustomAttribute, FakeCognito


async def watch(
    *, rows: int, quota: float, span_exporter: SpanExporter, metric_reader: MetricReader
) -> aiocognito.ClientStatistics:
    """A few web-style calls and one bulk run against a fake that throttles; return statistics."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    async with FakeCognito(user_update_rps=quota, seed=7) as fake:
        pool = fake.create_pool(custom_attributes=[CustomAttribute(name="tier")])
        fake.seed_users(pool.id, 50)
        client = aiocognito.CognitoClient(
            region_name="us-east-1",
            user_pool_id=pool.id,
            endpoint_url=fake.endpoint_url,
            # Told twice the real quota: the limiter finds out from the throttles.
            limits=aiocognito.Limits(user_update_rps=quota * 2),
            aws_access_key_id="fake",
            aws_secret_access_key="fake",
        )
        aiocognito.otel.instrument(
            client, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        async with client as cognito:
            for i in range(3):  # per-call traffic: one span each
                await cognito.admin_update_user_attributes(f"user{i}", {"custom:tier": "gold"})
            updates = (
                aiocognito.AttributeUpdate(
                    username=f"user{i % 50}", attributes={"custom:tier": f"t{i}"}
                )
                for i in range(rows)
            )
            async with cognito.bulk_update(updates) as outcomes:  # one span for the run
                async for _outcome in outcomes:
                    pass
            stats = cognito.statistics()
    meter_provider.shutdown()  # a last export of every metric
    tracer_provider.shutdown()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--quota", type=float, default=40.0)
    parser.add_argument("--debug", action="store_true", help="one log line per attempt")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiocognito").setLevel(logging.DEBUG if args.debug else logging.INFO)
    stats = asyncio.run(
        watch(
            rows=args.rows,
            quota=args.quota,
            span_exporter=ConsoleSpanExporter(),
            # Exported at shutdown; a service would export every few seconds.
            metric_reader=PeriodicExportingMetricReader(
                ConsoleMetricExporter(), export_interval_millis=3_600_000
            ),
        )
    )
    category = stats.categories["UserUpdate"]
    print(
        f"{stats.requests_sent} requests, {stats.throttled} throttled, {category.cuts} cuts; "
        f"allowed rate now {category.rate:.1f}/s"
    )


if __name__ == "__main__":
    main()
