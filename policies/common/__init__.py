"""The bottom layer: what every other package may import (API shapes, ...); it imports none of them."""
