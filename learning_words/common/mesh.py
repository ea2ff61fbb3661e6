"""The device mesh: one 'data' axis over every device of every host; state replicated.

Axis type Auto: shardings of intermediates are left to the compiler (jax >= 0.7 defaults
`make_mesh` to Explicit axes, which would demand an output sharding for every reshape).
"""
import jax
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """Mesh of shape (n_devices,) named 'data' (all devices of all processes by default)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,), devices=devices)


def replicate(module: nnx.Module, mesh):
  """Places every variable of `module` on all devices of the mesh."""
  nnx.update(module, jax.device_put(nnx.state(module), NamedSharding(mesh, P())))


def batch_sharding(mesh) -> NamedSharding:
  """The batch: leading axis split over 'data'."""
  return NamedSharding(mesh, P("data"))
