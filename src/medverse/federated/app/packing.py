"""Send SecAgg+ masked vectors as unsigned integers as wide as the modulus, not int64.

``secaggplus_mod`` (flwr 1.41) puts the masked, quantised parameters on the wire as int64
arrays although every value lies in ``[0, modulus)``. With the modulus a power of two that
fills an unsigned type (2**32 -> uint32, 2**16 -> uint16) the values fit that type exactly, and
the server's sums stay right: uint arithmetic wraps at 2**n, which is arithmetic mod 2**n, and
the workflow reduces with ``& (modulus - 1)`` before it subtracts the (int64) masks.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from medverse.core.errors import ConfigError

MODULUS = 2**32  # SecAggPlusWorkflow's default modulus_range
_DTYPES = {2**8: np.uint8, 2**16: np.uint16, 2**32: np.uint32}


def packed_dtype(modulus: int) -> type[np.unsignedinteger]:
    """The unsigned type whose wrap-around is arithmetic mod ``modulus``."""
    if modulus not in _DTYPES:
        raise ConfigError(f"packing needs a modulus of 2**8, 2**16 or 2**32, got {modulus}")
    return cast(type[np.unsignedinteger], _DTYPES[modulus])


def pack_masked(blobs: list[bytes], modulus: int) -> list[bytes]:
    """Masked arrays (serialised int64) re-serialised in ``packed_dtype(modulus)``."""
    dtype = packed_dtype(modulus)
    out = []
    for blob in blobs:
        array = bytes_to_ndarray(blob)
        if array.size and (array.min() < 0 or array.max() >= modulus):
            raise ConfigError(f"masked values outside [0, {modulus}): not reduced mod {modulus}")
        out.append(ndarray_to_bytes(array.astype(dtype)))
    return out


def packing_mod(modulus: int = MODULUS) -> Mod:
    """A client mod, placed before ``secaggplus_mod``, that packs the masked vectors it sends.

    The server's ``SecAggPlusWorkflow`` must use the same ``modulus_range``.
    """
    packed_dtype(modulus)

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None and Key.MASKED_PARAMETERS in configs:
            blobs = cast(list[bytes], configs[Key.MASKED_PARAMETERS])
            configs[Key.MASKED_PARAMETERS] = pack_masked(blobs, modulus)
        return reply

    return mod
