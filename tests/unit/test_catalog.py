from sizewise_otel.catalog import OBSERVABLE_KINDS, SIGNALS, Kind, Owner, signal


def test_names_are_unique_and_namespaced() -> None:
    names = [s.name for s in SIGNALS]
    assert len(names) == len(set(names))
    for s in SIGNALS:
        if s.owner is Owner.SIZEWISE and not s.name.startswith("db.client"):
            assert s.name.startswith("sizewise."), s.name


def test_seconds_histograms_have_explicit_buckets() -> None:
    for s in SIGNALS:
        if s.kind is Kind.HISTOGRAM:
            assert s.unit == "s" and s.buckets, s.name
            assert list(s.buckets) == sorted(s.buckets)


def test_prometheus_names_follow_the_exporter_rules() -> None:
    assert signal("sizewise.hvac.calculations").prom_name == "sizewise_hvac_calculations_total"
    assert signal("sizewise.hvac.calculation.duration").prom_name == "sizewise_hvac_calculation_duration_seconds"
    assert signal("db.client.operation.duration").prom_name == "db_client_operation_duration_seconds"
    # the spec's AlertRule examples use these names verbatim
    assert signal("sizewise_cpu_usage_percent").name == "sizewise.cpu.usage"
    assert signal("sizewise_error_rate_percent").name == "sizewise.error.rate"


def test_observables_have_a_tier() -> None:
    for s in SIGNALS:
        if s.kind in OBSERVABLE_KINDS:
            assert s.tier is not None, s.name
