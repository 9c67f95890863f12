import subprocess
import sys


def test_import_is_fast_and_does_not_import_torch():
    code = (
        "import sys, time; t = time.perf_counter(); import xpath; "
        "print(time.perf_counter() - t, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    seconds, torch_loaded = float(out[0]), out[1] == "True"
    assert not torch_loaded
    assert seconds < 1.0, f"import xpath took {seconds:.2f} s"


def test_downstream_layers_do_not_import_torch():
    code = (
        "import sys, xpath.io, xpath.datasets, xpath.ontology; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
