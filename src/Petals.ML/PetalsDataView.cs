using Microsoft.ML;
using Microsoft.ML.Data;

namespace Petals.ML;

/// <summary>
/// The lazy output of a Petals transformer: the input's columns and the computed one, appended last. Nothing is computed
/// until a cursor that needs the computed column moves; such a cursor reads the texts of up to a batch of rows ahead and
/// computes them together (bounded concurrency).
/// </summary>
/// <remarks>
/// The view does not shuffle (<see cref="CanShuffle"/> is false): a cursor reads the input with two cursors in step (one
/// ahead for the texts of the next batch, one for the other columns of the current row), which a shuffled input would not keep aligned.
/// </remarks>
internal sealed class PetalsDataView<TValue>(PetalsTransformer<TValue> transformer, IDataView input, DataViewSchema schema) : IDataView
{
    public bool CanShuffle => false;

    public DataViewSchema Schema { get; } = schema;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var outputIndex = input.Schema.Count;
        var needed = columnsNeeded.ToList();
        var computes = needed.Any(c => c.Index == outputIndex);
        var inputColumns = needed.Where(c => c.Index < outputIndex).Select(c => input.Schema[c.Index]).ToList();
        var follow = input.GetRowCursor(inputColumns);
        DataViewRowCursor? lead = null;
        try
        {
            lead = computes ? input.GetRowCursor([input.Schema[transformer.InputColumn]]) : null;
            return new Cursor(transformer, Schema, follow, lead, outputIndex);
        }
        catch
        {
            follow.Dispose();
            throw;
        }
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly PetalsTransformer<TValue> _transformer;
        private readonly DataViewRowCursor _follow;
        private readonly DataViewRowCursor? _lead;
        private readonly ValueGetter<ReadOnlyMemory<char>>? _text;
        private readonly int _outputIndex;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<string> _texts = [];
        private TValue[] _batch = [];
        private int _inBatch = -1;
        private long _position = -1;
        private bool _leadDone;

        public Cursor(PetalsTransformer<TValue> transformer, DataViewSchema schema, DataViewRowCursor follow, DataViewRowCursor? lead, int outputIndex)
        {
            _transformer = transformer;
            Schema = schema;
            _follow = follow;
            _lead = lead;
            _outputIndex = outputIndex;
            _text = lead?.GetGetter<ReadOnlyMemory<char>>(lead.Schema[transformer.InputColumn]);
        }

        public override DataViewSchema Schema { get; }

        public override long Position => _position;

        public override long Batch => _follow.Batch;

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index == _outputIndex ? _lead is not null : _follow.IsColumnActive(_follow.Schema[column.Index]);

        public override ValueGetter<TColumn> GetGetter<TColumn>(DataViewSchema.Column column)
        {
            if (column.Index != _outputIndex)
            {
                return _follow.GetGetter<TColumn>(_follow.Schema[column.Index]);
            }

            if (_lead is null)
            {
                throw new InvalidOperationException($"Column '{column.Name}' was not asked for when this cursor was made.");
            }

            var getter = _transformer.CreateGetter(() =>
            {
                if (_inBatch < 0)
                {
                    throw new InvalidOperationException("The cursor is not on a row.");
                }

                return _batch[_inBatch];
            });
            return getter as ValueGetter<TColumn>
                ?? throw new InvalidOperationException($"Column '{column.Name}' is {column.Type}, not {typeof(TColumn).Name}.");
        }

        public override ValueGetter<DataViewRowId> GetIdGetter() => _follow.GetIdGetter();

        public override bool MoveNext()
        {
            if (!_follow.MoveNext())
            {
                _inBatch = -1;
                return false;
            }

            _position++;
            if (_lead is not null)
            {
                _inBatch++;
                if (_inBatch >= _batch.Length)
                {
                    FillBatch();
                }
            }

            return true;
        }

        /// <summary>Reads the texts of the next batch with the lead cursor and computes them.</summary>
        private void FillBatch()
        {
            _texts.Clear();
            var text = default(ReadOnlyMemory<char>);
            while (_texts.Count < _transformer.BatchSize && !_leadDone)
            {
                if (!_lead!.MoveNext())
                {
                    _leadDone = true;
                    break;
                }

                _text!(ref text);
                _texts.Add(text.ToString());
            }

            if (_texts.Count == 0)
            {
                throw new InvalidOperationException($"The input gave more rows to one cursor than to another (row {_position}); Petals transforms need an input whose cursors see the same rows.");
            }

            var model = _transformer.GetModel(_stop.Token);
            _batch = _transformer.ComputeBatch(model, _texts, _position, _stop.Token);
            _inBatch = 0;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _stop.Cancel();
                _stop.Dispose();
                _follow.Dispose();
                _lead?.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
