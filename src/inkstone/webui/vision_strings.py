"""UI strings of the vision section of the Train tab, in English and Chinese (merged into i18n.py)."""
EN: dict[str, str] = {
    "vision_section": "Teach the writer to see (image → caption)",
    "vision_data": "Image-caption data (images/ + captions.json, or a saved dataset)",
    "vision_tower": "Vision tower folder (local CLIP or SigLIP)",
    "vision_from_model": "Stage 2: model folder of a stage-1 run",
    "vision_stage": "Stage", "vision_epochs": "Epochs", "vision_lr": "Learning rate",
    "vision_unfreeze": "Stage 2: train the vision tower too",
    "vision_start": "Start vision training", "vision_result": "Result",
}
ZH: dict[str, str] = {
    "vision_section": "教写作模型看图（图片 → 描述）",
    "vision_data": "图文数据（images/ 加 captions.json，或保存的数据集）",
    "vision_tower": "视觉塔文件夹（本地 CLIP 或 SigLIP）",
    "vision_from_model": "第二阶段：第一阶段训练出的模型文件夹",
    "vision_stage": "阶段", "vision_epochs": "轮数", "vision_lr": "学习率",
    "vision_unfreeze": "第二阶段：同时训练视觉塔",
    "vision_start": "开始视觉训练", "vision_result": "结果",
}
