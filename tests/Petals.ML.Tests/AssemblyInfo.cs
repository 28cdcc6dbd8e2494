namespace Petals.ML.Tests;
