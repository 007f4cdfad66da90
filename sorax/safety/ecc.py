"""Error correction for the watermark payload: a rate-1/2 convolutional code, soft Viterbi.

The NASA/CCSDS code (constraint length 7, generators 171 and 133 octal), terminated with six
zero bits. Soft decoding takes each coded bit's correlation (positive = bit 0), so a weak
correlation counts for little and a strong one for much; it gains about 5 dB over reading the
signs one by one (measured in BUILD_NOTES.md: payload exact rates).
"""

from __future__ import annotations

import functools

import numpy as np

K = 7
GENERATORS = (0o171, 0o133)


def coded_length(n_bits: int) -> int:
  return len(GENERATORS) * (n_bits + K - 1)


@functools.lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
  """next_state[state, bit], out[state, bit, 2] for the 2^(K-1) states (last K-1 input bits)."""
  n = 1 << (K - 1)
  nxt = np.zeros((n, 2), np.int64)
  out = np.zeros((n, 2, len(GENERATORS)), np.int8)
  for s in range(n):
    for b in (0, 1):
      reg = (b << (K - 1)) | s  # newest bit on top
      nxt[s, b] = reg >> 1
      out[s, b] = [bin(reg & g).count("1") & 1 for g in GENERATORS]
  return nxt, out


def encode(bits: np.ndarray) -> np.ndarray:
  """bits [n] (0/1) -> coded bits [2 (n + 6)]."""
  nxt, out = _trellis()
  s, coded = 0, []
  for b in np.concatenate([np.asarray(bits, np.int64), np.zeros(K - 1, np.int64)]):
    coded.extend(out[s, b])
    s = nxt[s, b]
  return np.asarray(coded, np.uint8)


def decode(soft: np.ndarray) -> np.ndarray:
  """soft [2 (n + 6)] (positive: bit 0 more likely) -> the most likely n message bits."""
  _, out = _trellis()
  soft = np.asarray(soft, np.float64).reshape(-1, len(GENERATORS))
  n_states = 1 << (K - 1)
  gain = 1.0 - 2.0 * out  # [states, 2, g]: +1 where the code bit is 0
  # Next state ns = (bit << K-2) | (s >> 1): its two predecessors differ in their lowest bit.
  ns = np.arange(n_states)
  bit = ns >> (K - 2)
  pred = np.stack([(ns & (n_states // 2 - 1)) << 1, ((ns & (n_states // 2 - 1)) << 1) | 1])
  metric = np.full(n_states, -np.inf)
  metric[0] = 0.0
  choice = np.zeros((len(soft), n_states), np.int64)  # which predecessor won
  for t, s_t in enumerate(soft):
    cand = metric[pred] + gain[pred, bit] @ s_t  # [2, states]
    choice[t] = np.argmax(cand, axis=0)
    metric = cand.max(axis=0)
  state, bits = 0, []  # terminated: the path ends in state 0
  for t in range(len(soft) - 1, -1, -1):
    bits.append(state >> (K - 2))
    state = pred[choice[t, state], state]
  return np.asarray(bits[::-1][:len(soft) - (K - 1)], np.uint8)
