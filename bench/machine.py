"""Facts about the machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from model.engine import cpu_count

#: FP32 FLOP per cycle per core assumed for the nominal peak: two 256-bit FMA pipes
#: (8 lanes x 2 FLOP x 2 pipes), as on AMD Zen 2-5 (Zen 4 runs AVX-512 as 2 x 256-bit)
#: and Intel client cores. Servers with two 512-bit FMA units reach 64.
FLOP_PER_CYCLE = 32


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages (NaNs where unavailable)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return [float("nan")] * 3


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    first = (out.stderr or out.stdout).splitlines()
    return first[0] if first else "unknown"


def describe() -> dict[str, Any]:
    """CPU model, cores, clock, SIMD, memory, OS, load and library versions (JSON-ready)."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    mhz = float(cpu.get("cpu MHz", "nan") or "nan")
    cores = cpu_count()
    mem_kb = 0
    try:
        match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(match.group(1)) if match else 0
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if f in flags]
    try:
        import confluent_kafka

        librdkafka = confluent_kafka.libversion()[0]
    except Exception:  # not installed or broken
        librdkafka = "unknown"
    try:
        from deploy.local_kafka import KAFKA_VERSION
    except Exception:  # deploy package missing
        KAFKA_VERSION = "unknown"  # noqa: N806
    return {
        "cpu": cpu.get("model name", platform.processor() or "unknown"),
        "cpu_family_model": f"{cpu.get('cpu family', '?')}/{cpu.get('model', '?')}",
        "cores": cores,
        "mhz": mhz,
        "simd": simd,
        "memory_gib": round(mem_kb / 2**20, 1),
        "nominal_peak_gflops": round(cores * mhz / 1000 * FLOP_PER_CYCLE, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": {
            "tensorflow": _version("tensorflow-cpu")
            if _version("tensorflow-cpu") != "not installed"
            else _version("tensorflow"),
            "keras": _version("keras"),
            "numpy": _version("numpy"),
            "confluent-kafka": _version("confluent-kafka"),
            "librdkafka": librdkafka,
            "kafka-broker": KAFKA_VERSION,
            "java": _java_version(),
        },
        "loadavg": loadavg(),
        "pid": os.getpid(),
    }
