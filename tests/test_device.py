"""GPU requests against the devices TensorFlow sees (the device query mocked)."""

from __future__ import annotations

import pytest

from gmmscape import device
from gmmscape.errors import InputError


def test_a_gpu_request_without_a_visible_gpu_stops_with_one_line(monkeypatch):
    monkeypatch.setattr(device, "visible_gpus", lambda: [])
    with pytest.raises(InputError, match=r"gpu: 1 requested but TensorFlow sees 0 GPU\(s\)"):
        device.check_gpus(1)
    device.check_gpus(0)  # CPU runs need nothing
    assert device.describe() == "TensorFlow device: CPU (no GPU visible)"


def test_visible_gpus_meet_the_request_and_are_named(monkeypatch):
    monkeypatch.setattr(device, "visible_gpus", lambda: ["/physical_device:GPU:0"])
    device.check_gpus(1)
    with pytest.raises(InputError, match="gpu: 2 requested but TensorFlow sees 1"):
        device.check_gpus(2)
    assert device.describe() == "TensorFlow device: 1 GPU(s) (/physical_device:GPU:0)"


def test_this_machine_reports_its_device():
    assert device.describe().startswith("TensorFlow device: ")
