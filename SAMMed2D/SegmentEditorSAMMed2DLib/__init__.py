"""The "SAM-Med2D" Segment Editor effect (Qt glue over ``sammed2d.interaction``)."""
