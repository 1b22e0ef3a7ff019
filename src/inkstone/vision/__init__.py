"""Seeing: a LLaVA-layout model (vision tower, projector, language model) that
captions images and writes scenes from them.

`tower` reads a CLIP or SigLIP folder, `assemble` joins it to the base model in
the layout transformers and vLLM both load, `images` opens and checks pictures
(PIL only), `pairs` reads image-caption data and reports bad pairs, `examples`
turns pairs into the describe prompt plus caption, `train` runs the two stages
with the text trainer's progress, checkpoints and resume, `jobs` starts it as a
child process, and `reference` captions through transformers.
"""
