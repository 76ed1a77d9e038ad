"""Face-recognition models: IResNet backbones, margin heads (ArcFace/CosFace/combined)."""
