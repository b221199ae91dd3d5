"""The map's geometry for export and display: keyframes fused into a point cloud and a TSDF mesh,
and their PLY files."""
