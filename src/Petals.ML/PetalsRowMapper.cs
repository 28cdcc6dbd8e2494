using Microsoft.ML;
using Microsoft.ML.Data;

namespace Petals.ML;

/// <summary>The row-by-row form of a Petals transformer (what a prediction engine uses): each row is computed alone, on demand.</summary>
internal sealed class PetalsRowMapper<TValue>(PetalsTransformer<TValue> transformer, DataViewSchema inputSchema, DataViewSchema outputSchema) : IRowToRowMapper
{
    public DataViewSchema InputSchema { get; } = inputSchema;

    public DataViewSchema OutputSchema { get; } = outputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        ArgumentNullException.ThrowIfNull(dependingColumns);
        var outputIndex = InputSchema.Count;
        var result = new List<DataViewSchema.Column>();
        foreach (var column in dependingColumns)
        {
            result.Add(column.Index == outputIndex ? InputSchema[transformer.InputColumn] : InputSchema[column.Index]);
        }

        return result.DistinctBy(c => c.Index).ToList();
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(activeColumns);
        return new Row(transformer, OutputSchema, input, activeColumns.Any(c => c.Index == InputSchema.Count));
    }

    private sealed class Row : DataViewRow
    {
        private readonly PetalsTransformer<TValue> _transformer;
        private readonly DataViewRow _input;
        private readonly bool _computes;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _text;
        private long _computedAt = -1;
        private TValue? _value;

        public Row(PetalsTransformer<TValue> transformer, DataViewSchema schema, DataViewRow input, bool computes)
        {
            _transformer = transformer;
            Schema = schema;
            _input = input;
            _computes = computes;
            _text = computes ? input.GetGetter<ReadOnlyMemory<char>>(input.Schema[transformer.InputColumn]) : null;
        }

        public override DataViewSchema Schema { get; }

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index == _input.Schema.Count ? _computes : _input.IsColumnActive(_input.Schema[column.Index]);

        public override ValueGetter<TColumn> GetGetter<TColumn>(DataViewSchema.Column column)
        {
            if (column.Index != _input.Schema.Count)
            {
                return _input.GetGetter<TColumn>(_input.Schema[column.Index]);
            }

            if (!_computes)
            {
                throw new InvalidOperationException($"Column '{column.Name}' is not active in this row.");
            }

            return _transformer.CreateGetter(Current) as ValueGetter<TColumn>
                ?? throw new InvalidOperationException($"Column '{column.Name}' is {column.Type}, not {typeof(TColumn).Name}.");
        }

        private TValue Current()
        {
            // A prediction engine reuses one row for every prediction; the input's position tells them apart.
            if (_computedAt != _input.Position || _value is null)
            {
                var text = default(ReadOnlyMemory<char>);
                _text!(ref text);
                _value = _transformer.ComputeOne(text.ToString(), _input.Position);
                _computedAt = _input.Position;
            }

            return _value;
        }
    }
}
