"""Video files in and out (probe, decode on the output grid, bucket, borders, picture, encode,
verify): no dataset policy beyond the probe's verdict on a source."""
