"""Peer for tests/python_reference_aux.rs: the Python reference aux coder on one side of an aux stream.

    python3 aux_peer.py encode HUMAN MACHINE IMAGE GAIN OUT.json
    python3 aux_peer.py decode HUMAN IN.json OUT.json

encode analyses IMAGE (the machine bundle's front gives P) and codes the aux
latent at GAIN; decode decodes the substreams of IN.json, then codes the
decoded latent again (the same symbols must give the same bytes). Substreams
travel as hex, as in refcodec_peer.py: this peer exercises tables, rANS and
the integer hyper-synthesis, not the container.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models" / "train"))

from fchm_train.detector import load_image_512  # noqa: E402
from fchm_train.refcodec import AuxCoder  # noqa: E402


def coded(z: bytes, y: bytes, info: dict) -> dict:
    return {"z_hex": z.hex(), "y_hex": y.hex(), "z_shape": list(info["z_sym"].shape),
            "y_shape": list(info["y_sym"].shape),
            "z_sym": info["z_sym"].ravel().tolist(), "y_sym": info["y_sym"].ravel().tolist()}  # fmt: skip


def encode(human: Path, machine: Path, image: str, gain: float, out: Path) -> None:
    coder = AuxCoder(human, machine)
    ya = coder.analyse(load_image_512(image))
    z, y, info = coder.encode(ya, gain)
    ya_hat, _ = coder.decode(z, y, info["z_sym"].shape, info["y_sym"].shape, gain)
    out.write_text(json.dumps({"gain": gain, "ya": ya.ravel().tolist(), "ya_hat": ya_hat.ravel().tolist(),
                               **coded(z, y, info)}))  # fmt: skip


def decode(human: Path, inp: Path, out: Path) -> None:
    j = json.loads(inp.read_text())
    coder = AuxCoder(human)
    ya_hat, info = coder.decode(bytes.fromhex(j["z_hex"]), bytes.fromhex(j["y_hex"]), tuple(j["z_shape"]),
                                tuple(j["y_shape"]), j["gain"])  # fmt: skip
    # Code what was decoded: rounding y_hat - mean and z_sym + medians - medians gives back the symbols.
    z_again = info["z_sym"] + coder.latent.medians[:, None, None]
    again = coded(*coder.latent.encode(info["y_hat"], z_again))
    out.write_text(json.dumps({
        "z_sym": info["z_sym"].ravel().tolist(), "y_sym": info["y_sym"].ravel().tolist(),
        "ya_hat": ya_hat.ravel().tolist(), "z_hex_again": again["z_hex"], "y_hex_again": again["y_hex"],
    }))  # fmt: skip


if __name__ == "__main__":
    cmd, human = sys.argv[1], Path(sys.argv[2])
    if cmd == "encode":
        encode(human, Path(sys.argv[3]), sys.argv[4], float(sys.argv[5]), Path(sys.argv[6]))
    elif cmd == "decode":
        decode(human, Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd!r}")
