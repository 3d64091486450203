"""Minimal HEVC (H.265) bitstream reader: the QP each slice was coded with.

Independent evidence that the encoder honoured the asked QP (x265's own logs are not).
Reads Annex-B NAL units, SPS/PPS far enough to reach ``slice_qp_delta`` in every slice
segment header (ITU-T H.265 7.3.2.2, 7.3.2.3, 7.3.6.1). SliceQpY = 26 + init_qp_minus26
+ slice_qp_delta. Screen-content / multilayer extensions are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vcfc.codecs.annexb import split_nal_units

NAL_VPS, NAL_SPS, NAL_PPS = 32, 33, 34
IDR_W_RADL, IDR_N_LP = 19, 20
SLICE_TYPES = {0: "B", 1: "P", 2: "I"}


class BitReader:
    """Exp-Golomb bit reader over an RBSP (emulation-prevention bytes already removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        if self.pos + n > 8 * len(self.data):
            raise ValueError("HEVC RBSP truncated")
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("HEVC exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (0x000003 -> 0x0000)."""
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _ceil_log2(x: int) -> int:
    return (x - 1).bit_length() if x > 1 else 0


def _profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> None:
    r.u(2 + 1 + 5 + 32 + 4 + 43 + 1 + 8)  # general profile/tier/flags/level: 96 bits
    sub = [(r.u(1), r.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        for _ in range(max_sub_layers_minus1, 8):
            r.u(2)
    for profile_present, level_present in sub:
        if profile_present:
            r.u(88)
        if level_present:
            r.u(8)


def _scaling_list_data(r: BitReader) -> None:
    for size_id in range(4):
        for _matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if not r.u(1):  # scaling_list_pred_mode_flag
                r.ue()
            else:
                if size_id > 1:
                    r.se()
                for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                    r.se()


@dataclass
class _Rps:
    delta_pocs: list[int]  # negative then positive
    used: list[bool]


def _st_ref_pic_set(r: BitReader, idx: int, sets: list[_Rps]) -> _Rps:
    """Parse st_ref_pic_set(idx) (7.3.7) and derive its delta POCs (7.4.8)."""
    if idx != 0 and r.u(1):  # inter_ref_pic_set_prediction_flag
        delta_idx = r.ue() + 1 if idx == len(sets) else 1
        sign = r.u(1)
        delta_rps = (1 - 2 * sign) * (r.ue() + 1)
        ref = sets[idx - delta_idx]
        pocs: list[int] = []
        used: list[bool] = []
        for j in range(len(ref.delta_pocs) + 1):
            u_flag = r.u(1)
            use_delta = 1 if u_flag else r.u(1)
            d = delta_rps + (ref.delta_pocs[j] if j < len(ref.delta_pocs) else 0)
            if use_delta and d != 0:
                pocs.append(d)
                used.append(bool(u_flag))
        return _Rps(pocs, used)
    n_neg, n_pos = r.ue(), r.ue()
    pocs, used, poc = [], [], 0
    for _ in range(n_neg):
        poc -= r.ue() + 1
        pocs.append(poc)
        used.append(bool(r.u(1)))
    poc = 0
    for _ in range(n_pos):
        poc += r.ue() + 1
        pocs.append(poc)
        used.append(bool(r.u(1)))
    return _Rps(pocs, used)


@dataclass
class Sps:
    chroma_array_type: int
    separate_colour_plane: bool
    pic_size_in_ctbs: int
    log2_max_poc_lsb: int
    sao: bool
    st_rps: list[_Rps] = field(default_factory=list)
    long_term: bool = False
    num_lt_sps: int = 0
    temporal_mvp: bool = False
    bit_depth: int = 8


def parse_sps(r: BitReader) -> tuple[int, Sps]:
    r.u(4)  # sps_video_parameter_set_id
    max_sub = r.u(3)
    r.u(1)
    _profile_tier_level(r, max_sub)
    sps_id = r.ue()
    chroma_format_idc = r.ue()
    separate = bool(r.u(1)) if chroma_format_idc == 3 else False
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance_window_flag
        for _ in range(4):
            r.ue()
    bit_depth = r.ue() + 8
    r.ue()  # bit_depth_chroma_minus8
    log2_max_poc_lsb = r.ue() + 4
    ordering_all = r.u(1)
    for _ in range(0 if ordering_all else max_sub, max_sub + 1):
        r.ue(), r.ue(), r.ue()
    log2_min_cb = r.ue() + 3
    log2_ctb = log2_min_cb + r.ue()
    r.ue(), r.ue(), r.ue(), r.ue()  # transform sizes / hierarchy depths
    if r.u(1) and r.u(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _scaling_list_data(r)
    r.u(1)  # amp_enabled_flag
    sao = bool(r.u(1))
    if r.u(1):  # pcm_enabled_flag
        r.u(4), r.u(4), r.ue(), r.ue(), r.u(1)
    st_rps: list[_Rps] = []
    for i in range(r.ue()):
        st_rps.append(_st_ref_pic_set(r, i, st_rps))
    long_term = bool(r.u(1))
    num_lt_sps = 0
    if long_term:
        num_lt_sps = r.ue()
        for _ in range(num_lt_sps):
            r.u(log2_max_poc_lsb), r.u(1)
    temporal_mvp = bool(r.u(1))
    ctb = 1 << log2_ctb
    ctbs = ((width + ctb - 1) // ctb) * ((height + ctb - 1) // ctb)
    sps = Sps(0 if separate else chroma_format_idc, separate, ctbs, log2_max_poc_lsb, sao,
              st_rps, long_term, num_lt_sps, temporal_mvp, bit_depth)
    return sps_id, sps


@dataclass
class Pps:
    sps_id: int
    dependent_slices: bool
    output_flag_present: bool
    num_extra_bits: int
    cabac_init_present: bool
    num_ref_idx_default: tuple[int, int]
    init_qp: int
    weighted_pred: bool
    weighted_bipred: bool
    lists_modification: bool = False
    cu_qp_delta_enabled: bool = False  # False: every CU is coded at its slice QP


def parse_pps(r: BitReader) -> tuple[int, Pps]:
    pps_id, sps_id = r.ue(), r.ue()
    dependent = bool(r.u(1))
    output_flag = bool(r.u(1))
    extra = r.u(3)
    r.u(1)  # sign_data_hiding_enabled_flag
    cabac_init = bool(r.u(1))
    l0, l1 = r.ue() + 1, r.ue() + 1
    init_qp = 26 + r.se()
    r.u(1), r.u(1)  # constrained_intra_pred_flag, transform_skip_enabled_flag
    cu_qp_delta = bool(r.u(1))
    if cu_qp_delta:
        r.ue()  # diff_cu_qp_delta_depth
    r.se(), r.se(), r.u(1)  # cb/cr offsets, pps_slice_chroma_qp_offsets_present_flag
    wp, wbp = bool(r.u(1)), bool(r.u(1))
    r.u(1)  # transquant_bypass_enabled_flag
    tiles = r.u(1)
    r.u(1)  # entropy_coding_sync_enabled_flag
    if tiles:
        cols, rows = r.ue(), r.ue()
        if not r.u(1):  # uniform_spacing_flag
            for _ in range(cols + rows):
                r.ue()
        r.u(1)
    r.u(1)  # pps_loop_filter_across_slices_enabled_flag
    if r.u(1):  # deblocking_filter_control_present_flag
        r.u(1)
        if not r.u(1):
            r.se(), r.se()
    if r.u(1):
        _scaling_list_data(r)
    lists_mod = bool(r.u(1))
    return pps_id, Pps(sps_id, dependent, output_flag, extra, cabac_init, (l0, l1), init_qp,
                       wp, wbp, lists_mod, cu_qp_delta)


@dataclass
class SliceInfo:
    nal_type: int
    slice_type: str
    qp: int
    first_in_pic: bool
    cu_qp_delta_enabled: bool


def _pred_weight_table(r: BitReader, sps: Sps, n_refs: tuple[int, ...]) -> None:
    r.ue()
    if sps.chroma_array_type:
        r.se()
    for n in n_refs:
        luma = [r.u(1) for _ in range(n)]
        chroma = [r.u(1) for _ in range(n)] if sps.chroma_array_type else [0] * n
        for i in range(n):
            if luma[i]:
                r.se(), r.se()
            if chroma[i]:
                for _ in range(4):
                    r.se()


def parse_slice_header(r: BitReader, nal_type: int, spss: dict[int, Sps],
                       ppss: dict[int, Pps]) -> SliceInfo | None:
    """Parse up to slice_qp_delta. None for a dependent slice segment (it has no QP of its own)."""
    first = bool(r.u(1))
    if 16 <= nal_type <= 23:
        r.u(1)  # no_output_of_prior_pics_flag
    pps_id = r.ue()
    if pps_id not in ppss or ppss[pps_id].sps_id not in spss:
        raise ValueError(f"HEVC slice refers to unknown PPS {pps_id}")
    pps = ppss[pps_id]
    sps = spss[pps.sps_id]
    if not first:
        if pps.dependent_slices and r.u(1):
            return None
        r.u(_ceil_log2(sps.pic_size_in_ctbs))
    r.u(pps.num_extra_bits)
    slice_type = r.ue()
    if slice_type not in SLICE_TYPES:
        raise ValueError(f"HEVC slice_type {slice_type} invalid")
    if pps.output_flag_present:
        r.u(1)
    if sps.separate_colour_plane:
        r.u(2)
    temporal_mvp = False
    num_pic_total_curr = 0
    if nal_type not in (IDR_W_RADL, IDR_N_LP):
        r.u(sps.log2_max_poc_lsb)
        if not r.u(1):  # short_term_ref_pic_set_sps_flag
            rps = _st_ref_pic_set(r, len(sps.st_rps), sps.st_rps)
        else:
            idx = r.u(_ceil_log2(len(sps.st_rps))) if len(sps.st_rps) > 1 else 0
            rps = sps.st_rps[idx]
        num_pic_total_curr = sum(rps.used)
        if sps.long_term:
            n_sps = r.ue() if sps.num_lt_sps > 0 else 0
            n_pics = r.ue()
            for i in range(n_sps + n_pics):
                if i < n_sps:
                    if sps.num_lt_sps > 1:
                        r.u(_ceil_log2(sps.num_lt_sps))
                    # used_by_curr of an SPS long-term entry: unknown here; assume used
                    num_pic_total_curr += 1
                else:
                    r.u(sps.log2_max_poc_lsb)
                    num_pic_total_curr += r.u(1)
                if r.u(1):  # delta_poc_msb_present_flag
                    r.ue()
        if sps.temporal_mvp:
            temporal_mvp = bool(r.u(1))
    if sps.sao:
        r.u(1)
        if sps.chroma_array_type:
            r.u(1)
    if slice_type != 2:  # P or B
        is_b = slice_type == 0
        n0, n1 = pps.num_ref_idx_default
        if r.u(1):  # num_ref_idx_active_override_flag
            n0 = r.ue() + 1
            if is_b:
                n1 = r.ue() + 1
        if pps.lists_modification and num_pic_total_curr > 1:
            bits = _ceil_log2(num_pic_total_curr)
            for n in ((n0, n1) if is_b else (n0,)):
                if r.u(1):
                    for _ in range(n):
                        r.u(bits)
        if is_b:
            r.u(1)  # mvd_l1_zero_flag
        if pps.cabac_init_present:
            r.u(1)
        if temporal_mvp:
            from_l0 = r.u(1) if is_b else 1
            if (from_l0 and n0 > 1) or (not from_l0 and n1 > 1):
                r.ue()
        if (pps.weighted_pred and not is_b) or (pps.weighted_bipred and is_b):
            _pred_weight_table(r, sps, (n0, n1) if is_b else (n0,))
        r.ue()  # five_minus_max_num_merge_cand
    qp = pps.init_qp + r.se()
    return SliceInfo(nal_type, SLICE_TYPES[slice_type], qp, first, pps.cu_qp_delta_enabled)


def parse_slices(annexb: bytes) -> list[SliceInfo]:
    """Every independent slice segment of the stream, in order. ValueError on malformed data."""
    spss: dict[int, Sps] = {}
    ppss: dict[int, Pps] = {}
    out: list[SliceInfo] = []
    for nal in split_nal_units(annexb):
        if len(nal) < 3:
            continue
        nal_type = (nal[0] >> 1) & 0x3F
        if nal[0] & 0x80 or (nal[1] >> 3) & 0x3F:  # forbidden bit / other layers: skip
            continue
        if nal_type == NAL_SPS:
            sid, sps = parse_sps(BitReader(rbsp(nal[2:])))
            spss[sid] = sps
        elif nal_type == NAL_PPS:
            pid, pps = parse_pps(BitReader(rbsp(nal[2:])))
            ppss[pid] = pps
        elif nal_type <= 21 and not (10 <= nal_type <= 15):  # VCL NAL units
            info = parse_slice_header(BitReader(rbsp(nal[2:])), nal_type, spss, ppss)
            if info is not None:
                out.append(info)
    return out


def slice_qps(annexb: bytes) -> list[int]:
    """SliceQpY of every independent slice segment in an Annex-B HEVC stream (ValueError if malformed)."""
    try:
        return [s.qp for s in parse_slices(annexb)]
    except IndexError:  # e.g. an RPS referring to a set that does not exist
        raise ValueError("malformed HEVC parameter sets") from None
