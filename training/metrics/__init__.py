"""Evaluation metrics: OKS keypoint AP/AR, PoseTrack's per-joint AP (poseval) and PSNR/SSIM."""
