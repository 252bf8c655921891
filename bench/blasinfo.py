"""Which BLAS kernel the python peer runs (threadpoolctl is not installed here): asks the loaded
OpenBLAS for its core name and thread count through ctypes. Import from a bench script:
    from blasinfo import blas_info; print(blas_info(), file=sys.stderr)"""
import ctypes, os


def blas_info():
    import numpy  # noqa: F401  (loads libopenblas)
    names = []
    for line in open("/proc/self/maps"):
        p = line.split()[-1]
        if "openblas" in p and p.endswith((".so", ".so.0")) or "libblas" in p:
            if p not in names:
                names.append(p)
    out = []
    for p in names:
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            out.append(f"{os.path.basename(p)}: core {lib.openblas_get_corename().decode()}, {lib.openblas_get_num_threads()} threads")
        except (OSError, AttributeError):
            pass
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS") if k in os.environ}
    return "; ".join(out or ["OpenBLAS not found in process maps"]) + f"; OPENBLAS_* env: {env or 'unset'}"


if __name__ == "__main__":
    print(blas_info())
