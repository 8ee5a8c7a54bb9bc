"""Model dirs for the funasr engine, built from funasr's own model classes
with random weights: no Paraformer weights can be downloaded here, so the
tests and the cost benchmark load these through the path users take
(`funasr.AutoModel(model=DIR)`).

The configs follow the published `paraformer-zh-streaming` (SANMEncoderChunkOpt,
50 + 16 blocks of 512) and `paraformer` (SANMEncoder) model cards; "tiny"
keeps the architecture and shrinks it for fast tests. A dir holds what a
downloaded one holds: config.yaml, model.pt, tokens.json, am.mvn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SIZES = {
    # encoder width, heads, ffn, encoder blocks, decoder blocks, vocabulary
    "tiny": dict(width=64, heads=4, ffn=128, encoder_blocks=3, decoder_blocks=2, vocab=512),
    "real": dict(width=512, heads=4, ffn=2048, encoder_blocks=50, decoder_blocks=16, vocab=8404),
}


KINDS = ("online", "offline", "seaco")    # streaming Paraformer, Paraformer, SeACo-Paraformer (hotwords)


def _config(kind: str, width, heads, ffn, encoder_blocks, decoder_blocks, vocab) -> dict:
    online = kind == "online"
    encoder_conf = {
        "output_size": width, "attention_heads": heads, "linear_units": ffn, "num_blocks": encoder_blocks,
        "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
        "input_layer": "pe_online" if online else "pe", "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True, "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
    }
    if online:
        encoder_conf.update({"chunk_size": [12, 15], "stride": [8, 10], "pad_left": [0, 0],
                             "encoder_att_look_back_factor": [4, 4], "decoder_att_look_back_factor": [1, 1]})
    model_conf = {"ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True,
                  "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75}
    if kind == "seaco":     # the hotword bias encoder and decoder of speech_seaco_paraformer
        model_conf.update({
            "inner_dim": width, "bias_encoder_type": "lstm", "NO_BIAS": vocab - 1,
            "seaco_decoder": "ParaformerSANMDecoder",
            "seaco_decoder_conf": {"attention_heads": heads, "linear_units": ffn // 2, "num_blocks": max(1, decoder_blocks // 4),
                                   "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                                   "self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1,
                                   "kernel_size": 21, "sanm_shfit": 0, "use_output_layer": False,
                                   "wo_input_layer": True}})
    return {
        "model": {"online": "ParaformerStreaming", "offline": "Paraformer", "seaco": "SeacoParaformer"}[kind],
        "model_conf": model_conf,
        "encoder": "SANMEncoderChunkOpt" if online else "SANMEncoder",
        "encoder_conf": encoder_conf,
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {"attention_heads": heads, "linear_units": ffn, "num_blocks": decoder_blocks,
                         "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                         "self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1,
                         "att_layer_num": decoder_blocks, "kernel_size": 11, "sanm_shfit": 5 if online else 0},
        "predictor": "CifPredictorV2",
        "predictor_conf": {"idim": width, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45},
        "frontend": "WavFrontendOnline" if online else "WavFrontend",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25,
                          "frame_shift": 10, "lfr_m": 7, "lfr_n": 6, "dither": 0.0},
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
        "normalize": None,
    }


def _tokens(vocab: int) -> list[str]:
    # Paraformer's layout: blank, sos, eos, then the units, <unk> last.
    # CJK characters from U+4E00 on, like the Mandarin models' units.
    return ["<blank>", "<s>", "</s>"] + [chr(0x4E00 + i) for i in range(vocab - 4)] + ["<unk>"]


def _write_cmvn(path: Path, dim: int) -> None:
    # Global CMVN in Kaldi nnet text; roughly the scale of real log-mel features.
    means = " ".join(["-10.0"] * dim)
    scales = " ".join(["0.25"] * dim)
    path.write_text(f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n"
                    f"<LearnRateCoef> 0 [ {means} ]\n<Rescale> {dim} {dim}\n"
                    f"<LearnRateCoef> 0 [ {scales} ]\n</Nnet>\n")


def build_model_dir(path: str | Path, kind: str = "offline", size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight model dir of one of KINDS and return its path."""
    import torch
    import yaml
    from funasr.register import tables
    import funasr.models.paraformer_streaming.model  # noqa: F401  (registers the classes)
    import funasr.models.seaco_paraformer.model  # noqa: F401

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dims = SIZES[size]
    config = _config(kind, **dims)
    tokens = _tokens(dims["vocab"])
    (path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    (path / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    _write_cmvn(path / "am.mvn", 80 * 7)

    torch.manual_seed(seed)
    model_class = tables.model_classes[config["model"]]
    model = model_class(**config, **config["model_conf"], input_size=80 * 7, vocab_size=len(tokens))
    torch.save(model.state_dict(), path / "model.pt")
    return path


def build_pair(root: str | Path, size: str = "tiny") -> tuple[Path, Path]:
    """(online dir, offline dir) under root."""
    root = Path(root)
    return (build_model_dir(root / f"paraformer-online-{size}", "online", size, seed=1),
            build_model_dir(root / f"paraformer-offline-{size}", "offline", size, seed=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write the two model dirs into")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = parser.parse_args()
    for directory in build_pair(args.root, args.size):
        print(directory)


if __name__ == "__main__":
    main()
